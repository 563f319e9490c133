//! The API contract, checked from outside by a peer somebody else wrote:
//! Schemathesis reads `/openapi.json` of a real `gridlink-cloud serve`
//! (SQLite, seeded with a VEN, its readings, shadow, a program, an event,
//! a project and an API key) and sends every operation random valid and
//! invalid input, once per role (`viewer`, `installer`, `operator`,
//! `admin`, `ven`, and no token). Every answer must be documented: no 5xx
//! (`not_a_server_error`), a status the operation lists
//! (`status_code_conformance`), its content type, schema and headers.
//!
//! Schemathesis lives in a virtualenv made by `scripts/setup-test-deps`
//! (`$GRIDLINK_TOOLS_DIR/schemathesis`, default
//! `~/.cache/gridlink/tools/schemathesis`); without it the test fails with
//! the command that installs it. `GRIDLINK_CONTRACT_EXAMPLES` sets the
//! cases per operation and phase (default 20), `GRIDLINK_CONTRACT_ROLES`
//! a comma-separated subset of roles.
//!
//! `GET /api/v1/live` is left out: it is a stream that stays open while
//! the client listens, which Schemathesis reads as a time-out.
//!
//! Beside it, one focused test per class of discrepancy Schemathesis or
//! users found, through the router without a socket (`oneshot`).

#![expect(
    clippy::unwrap_used,
    reason = "the helpers are test steps: a failed step panics with its error"
)]

mod common;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use common::ApiApp;
use gridlink_cloud::api::{MAX_SKIP, Operation, openapi_document};
use gridlink_cloud::store::Role;
use gridlink_provision::pki::TestPki;
use gridlink_testkit::free_port;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_gridlink-cloud");
/// The roles a token can have, and `none`: no token at all.
const ROLES: [&str; 6] = ["viewer", "installer", "operator", "admin", "ven", "none"];

/// The Schemathesis executable, or a panic naming how to install it.
fn schemathesis() -> PathBuf {
    let tools = std::env::var_os("GRIDLINK_TOOLS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/gridlink/tools")
        },
        PathBuf::from,
    );
    let st = tools.join("schemathesis/bin/st");
    assert!(
        st.is_file(),
        "{} is missing: install Schemathesis with scripts/setup-test-deps",
        st.display()
    );
    st
}

/// A `serve` process, killed when the test ends.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary in `dir` with the test's configuration and no inherited
/// `GRIDLINK_*` variable.
fn cloud(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("GRIDLINK_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// One HTTP/1.1 request; the status and body of the answer.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(
            request,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// A request that must succeed; its JSON answer.
fn call(port: u16, method: &str, path: &str, auth: &str, body: &str) -> serde_json::Value {
    let bearer = format!("Bearer {auth}");
    let (status, answer) = http(
        port,
        method,
        path,
        &[("Authorization", &bearer)],
        Some(body),
    )
    .unwrap();
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {answer}"
    );
    serde_json::from_str(&answer).unwrap()
}

/// Seeds what the examples of the document name (`site-42`), so
/// Schemathesis reaches past the 404s: a registered VEN with readings, a
/// shadow, a program, an event, a project with a finance entry. Returns an
/// API key for HTTP ingest.
fn seed(port: u16, admin: &str) -> String {
    call(
        port,
        "PUT",
        "/api/v1/vens/site-42",
        admin,
        r#"{"site":"Depot North","site_meter":"main","groups":["north"],
            "loads":[{"name":"hvac","rated_power_w":3000}]}"#,
    );
    let key = call(
        port,
        "POST",
        "/api/v1/api-keys",
        admin,
        r#"{"name":"contract","customer":"acme","ven_ids":["site-42"]}"#,
    )["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let readings: Vec<String> = (0..60u128)
        .map(|i| {
            format!(
                r#"{{"meter":"main","quantity":"active_power","ts_ms":{},"value":{}}}"#,
                now_ms - 3_600_000 + i * 60_000,
                1000 + i
            )
        })
        .collect();
    let ingest = format!(
        r#"{{"ven_id":"site-42","readings":[{}]}}"#,
        readings.join(",")
    );
    let (status, answer) = http(
        port,
        "POST",
        "/api/v1/ingest",
        &[("x-api-key", &key)],
        Some(&ingest),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    call(
        port,
        "PATCH",
        "/api/v1/vens/site-42/shadow",
        admin,
        r#"{"desired":{"poll_interval_ms":5000}}"#,
    );
    let program = call(
        port,
        "POST",
        "/openadr3/3.1.0/programs",
        admin,
        r#"{"programName":"peak-shave","targets":["north"]}"#,
    );
    let program_id = program["id"].as_str().unwrap();
    call(
        port,
        "POST",
        "/openadr3/3.1.0/events",
        admin,
        &format!(
            r#"{{"programID":"{program_id}","eventName":"evening peak","priority":1,
                "intervalPeriod":{{"start":"2026-11-22T17:00:00Z","duration":"PT1H"}},
                "intervals":[{{"id":0,"payloads":[{{"type":"SIMPLE","values":[2]}}]}}]}}"#
        ),
    );
    let project = call(
        port,
        "POST",
        "/api/v1/projects",
        admin,
        r#"{"name":"Solar park","kind":"renewable","status":"operational","capacity_kw":100,
            "location":{"latitude":52.1,"longitude":4.3},"ven_ids":["site-42"]}"#,
    );
    let project_id = project["id"].as_i64().unwrap();
    call(
        port,
        "POST",
        &format!("/api/v1/projects/{project_id}/finances"),
        admin,
        r#"{"kind":"expense","amount":"1250.00","at":"2026-11-01"}"#,
    );
    key
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "start, seed, and one run per role, read top to bottom"
)]
fn every_operation_answers_as_documented_for_every_role() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    let pki = TestPki::generate(&pki_dir, &[]).unwrap();
    let http_port = free_port();
    // No broker listens here: ingest keeps reconnecting and /health says
    // so (503, documented); the API is served all the same.
    let broker_port = free_port();
    let env = [
        (
            "GRIDLINK_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("cloud.db").display()),
        ),
        ("GRIDLINK_HTTP_LISTEN", format!("127.0.0.1:{http_port}")),
        ("GRIDLINK_MQTT_HOST", "127.0.0.1".to_owned()),
        ("GRIDLINK_MQTT_PORT", broker_port.to_string()),
        ("GRIDLINK_MQTT_CA", pki.ca_cert().display().to_string()),
        (
            "GRIDLINK_MQTT_CERT",
            pki.backend().cert.display().to_string(),
        ),
        ("GRIDLINK_MQTT_KEY", pki.backend().key.display().to_string()),
        ("GRIDLINK_MQTT_CLIENT_ID", "contract-test".to_owned()),
        ("GRIDLINK_LOG", "warn".to_owned()),
    ];
    let output = cloud(dir.path(), &env).arg("migrate").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut tokens = Vec::new();
    for role in ROLES.iter().filter(|&&r| r != "none") {
        let output = cloud(dir.path(), &env)
            .args(["token", "create", "--role", role, "--name", role])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        tokens.push((*role, token));
    }
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _serve = Serve(
        cloud(dir.path(), &env)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(http_port, "GET", "/openapi.json", &[], None).is_err() {
        assert!(Instant::now() < deadline, "serve did not answer in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let admin = &tokens.iter().find(|(r, _)| *r == "admin").unwrap().1;
    let api_key = seed(http_port, admin);

    let examples = std::env::var("GRIDLINK_CONTRACT_EXAMPLES").unwrap_or_else(|_| "20".into());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let started_all = Instant::now();
    let roles = std::env::var("GRIDLINK_CONTRACT_ROLES").unwrap_or_else(|_| ROLES.join(","));
    let mut failed = Vec::new();
    for role in roles.split(',') {
        let started = Instant::now();
        let report = dir.path().join(format!("junit-{role}.xml"));
        let mut run = Command::new(&st);
        run.args(["--config-file", config, "run"])
            .arg(format!("http://127.0.0.1:{http_port}/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
                "--mode",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                &examples,
                // One worker: Hypothesis's example cache is not thread-safe
                // (with two it sometimes fails with a KeyError of its own).
                "--workers",
                "1",
                "--seed",
                "42",
                "--request-timeout",
                "10",
                "--exclude-operation-id",
                "getLiveStream",
                "--suppress-health-check",
                "all",
                "--no-color",
                "--report",
                "junit",
                "--report-junit-path",
            ])
            .arg(&report)
            .args(["-H", &format!("x-api-key: {api_key}")])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path());
        if let Some((_, token)) = tokens.iter().find(|(r, _)| *r == role) {
            run.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let output = run.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains(" generated, ") || l.contains("Tested:"))
            .collect();
        println!(
            "role {role}: {} in {:.1} s\n{}",
            output.status,
            started.elapsed().as_secs_f64(),
            summary.join("\n")
        );
        if !output.status.success() {
            // Tracebacks carry very long lines: keep each readable.
            let shown: Vec<String> = stdout
                .lines()
                .map(|l| l.chars().take(400).collect())
                .collect();
            println!(
                "{}\n{}",
                shown.join("\n"),
                String::from_utf8_lossy(&output.stderr)
            );
            failed.push(role.to_owned());
        }
    }
    println!(
        "Schemathesis: {} s for the roles {roles}",
        started_all.elapsed().as_secs()
    );
    if !failed.is_empty() {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        let tail: String = log.lines().rev().take(50).collect::<Vec<_>>().join("\n");
        panic!(
            "Schemathesis found discrepancies for roles {failed:?}; serve's log (newest first):\n{tail}"
        );
    }
}

/// One request through the router with a raw body and content type; the
/// status and the JSON answer.
async fn raw(
    app: &ApiApp,
    method: &Method,
    uri: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(AUTHORIZATION, format!("Bearer {}", app.token(Role::Admin)));
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    // The VTN's problems are `application/json`, as openadr3.yaml has them.
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        if status.is_success() || uri.starts_with("/openadr3/") {
            "application/json"
        } else {
            "application/problem+json"
        }
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `operation`'s path with every `{param}` replaced by `value`.
fn concrete(operation: Operation, value: &str) -> String {
    operation
        .path()
        .split('/')
        .map(|seg| if seg.starts_with('{') { value } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The problem's first invalid parameter: its name and reason.
fn first_param(json: &Value) -> (&str, &str) {
    (
        json["invalid_params"][0]["name"]
            .as_str()
            .unwrap_or_default(),
        json["invalid_params"][0]["reason"]
            .as_str()
            .unwrap_or_default(),
    )
}

/// Every JSON write, a body without `Content-Type`: 415 naming the
/// header, and the document lists 415 (it did on 4 of 13 operations).
#[tokio::test]
async fn json_writes_without_content_type_are_a_documented_415() {
    let app = ApiApp::sqlite().await;
    let doc = openapi_document();
    let mut checked = 0;
    for operation in Operation::ALL {
        let method = operation.method().as_str().to_ascii_lowercase();
        let described = &doc["paths"][operation.path()][&method];
        // Ingest and the OAuth token request take their own bodies (their
        // tests: tests/http_ingest.rs, tests/vtn.rs).
        if described["requestBody"]["required"] != true
            || matches!(operation, Operation::Ingest | Operation::AuthToken)
        {
            continue;
        }
        assert!(described["responses"]["415"].is_object(), "{operation:?}");
        assert!(described["responses"]["413"].is_object(), "{operation:?}");
        let uri = concrete(operation, "1");
        let (status, json) = raw(&app, &operation.method(), &uri, None, "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri}: {json}");
        assert_eq!(json["type"], "urn:gridlink:problem:invalid-body");
        assert_eq!(first_param(&json).0, "Content-Type", "{uri}: {json}");
        let (status, json) = raw(&app, &operation.method(), &uri, Some("text/plain"), "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{uri}: {json}");
        checked += 1;
    }
    assert!(checked >= 12, "{checked} JSON writes");
}

/// Bodies that are not JSON, not an object, or miss a field: 400 problems
/// naming `body` or the field, in our words rather than axum's.
#[tokio::test]
async fn body_errors_are_problems_naming_the_field() {
    let app = ApiApp::sqlite().await;
    let json_type = Some("application/json");
    let put = Method::PUT;
    let groups = "/api/v1/vens/site-1/groups";
    let (status, json) = raw(&app, &put, groups, json_type, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["type"], "urn:gridlink:problem:invalid-parameter");
    assert_eq!(first_param(&json), ("groups", "missing field `groups`"));
    for (body, name, kind) in [
        (r#"{"groups": "north"}"#, "groups", "invalid-parameter"),
        (r#"{"groups": [1]}"#, "groups[0]", "invalid-parameter"),
        (
            r#"{"groups": [], "colour": 1}"#,
            "colour",
            "invalid-parameter",
        ),
        ("[]", "body", "invalid-parameter"),
        ("{", "body", "invalid-body"),
        ("", "body", "invalid-body"),
    ] {
        let (status, json) = raw(&app, &put, groups, json_type, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(
            json["type"],
            format!("urn:gridlink:problem:{kind}"),
            "{body}"
        );
        assert_eq!(first_param(&json).0, name, "{body}: {json}");
        let detail = json["detail"].as_str().unwrap();
        assert!(!detail.contains("Failed to"), "axum's wording: {detail}");
        if kind == "invalid-parameter" {
            // The name says where; serde's position is for syntax errors.
            assert!(!detail.contains(" at line "), "{detail}");
        }
    }
    // The same on another route: the extractor is shared.
    let (status, json) = raw(
        &app,
        &Method::POST,
        "/api/v1/tokens",
        json_type,
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(first_param(&json).0, "role");
}

/// `"version": null` is not an integer: refused, nothing bumped.
#[tokio::test]
async fn shadow_version_must_be_an_integer_not_null() {
    let app = ApiApp::sqlite().await;
    let uri = "/api/v1/vens/site-1/shadow";
    for (body, needle) in [
        (
            json!({"desired": {}, "version": null}),
            "must be an integer",
        ),
        (json!({"desired": {}, "version": -1}), "must be an integer"),
        (json!({"desired": {}, "version": 1.5}), "must be an integer"),
        (
            json!({"desired": {}, "version": 9_223_372_036_854_775_808_u64}),
            "9223372036854775807",
        ),
    ] {
        let (status, json) = raw(
            &app,
            &Method::PATCH,
            uri,
            Some("application/json"),
            &body.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        let (name, reason) = first_param(&json);
        assert_eq!(name, "version", "{body}: {json}");
        assert!(reason.contains(needle), "{body}: {reason}");
    }
    let schema =
        &openapi_document()["components"]["schemas"]["ShadowPatch"]["properties"]["version"];
    assert_eq!(schema["type"], "integer", "not nullable");
    assert_eq!(schema["maximum"], i64::MAX);
}

/// `skip` beyond what the stores page with is refused, and both the
/// message and the schema say where the range ends.
#[tokio::test]
async fn skip_and_limit_ranges_match_the_schema() {
    let app = ApiApp::sqlite().await;
    for path in ["/openadr3/3.1.0/programs", "/openadr3/3.1.0/events"] {
        let ok = app
            .ok(
                Method::GET,
                &format!("{path}?skip={MAX_SKIP}&limit=0"),
                None,
            )
            .await;
        assert_eq!(ok, json!([]));
        let over = u64::from(MAX_SKIP) + 1;
        for query in [format!("skip={over}"), "skip=4294967296".to_owned()] {
            let (status, json) =
                raw(&app, &Method::GET, &format!("{path}?{query}"), None, "").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
            let (name, reason) = first_param(&json);
            assert_eq!(name, "skip");
            assert_eq!(reason, format!("an integer from 0 to {MAX_SKIP}"));
        }
    }
    let doc = openapi_document();
    let params = doc["paths"]["/openadr3/3.1.0/events"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let skip = params.iter().find(|p| p["name"] == "skip").unwrap();
    // openadr3.yaml: an int32 from 0, the range the server enforces.
    assert_eq!(skip["schema"]["format"], "int32");
    assert_eq!(skip["schema"]["minimum"], 0);
    assert_eq!(i64::from(MAX_SKIP), i64::from(i32::MAX));
}

/// Text the server refuses (control characters) is refused by the schema
/// too, and messages quote what was sent as JSON does, never as Rust's
/// debug formatting (`\u{1}`).
#[tokio::test]
async fn control_characters_are_refused_by_server_and_schema_alike() {
    let app = ApiApp::sqlite().await;
    let json_type = Some("application/json");
    for (method, uri, body, name) in [
        (
            Method::PUT,
            "/api/v1/vens/site-1",
            json!({"site": "a\u{1}b"}),
            "site",
        ),
        (
            Method::PUT,
            "/api/v1/vens/site-1/groups",
            json!({"groups": ["a\u{7f}"]}),
            "groups",
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            json!({"name": "a\u{85}", "role": "viewer"}),
            "name",
        ),
        (
            Method::POST,
            "/openadr3/3.1.0/programs",
            json!({"programName": "p", "targets": ["\n"]}),
            "targets[0]",
        ),
    ] {
        let (status, json) = raw(&app, &method, uri, json_type, &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {json}");
        assert_eq!(first_param(&json).0, name, "{uri}: {json}");
    }
    let (status, json) = raw(
        &app,
        &Method::GET,
        "/api/v1/series?ven=site-1&meter=main&quantity=%01x",
        None,
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reason = first_param(&json).1;
    assert!(reason.contains(r#""\u0001x""#), "{reason}");
    assert!(!reason.contains("\\u{"), "{reason}");

    let doc = openapi_document();
    let schemas = &doc["components"]["schemas"];
    let pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$";
    assert_eq!(
        schemas["VenRegistration"]["properties"]["site"]["pattern"],
        pattern
    );
    assert_eq!(
        schemas["VenGroupsRequest"]["properties"]["groups"]["items"]["pattern"],
        pattern
    );
    assert_eq!(
        schemas["ProgramRequest"]["properties"]["targets"]["items"]["pattern"],
        pattern
    );
    assert_eq!(
        schemas["EventRequest"]["properties"]["targets"]["items"]["pattern"],
        pattern
    );
    assert!(schemas["TokenRequest"]["properties"]["name"]["pattern"].is_string());
    assert!(schemas["ApiKeyRequest"]["properties"]["customer"]["pattern"].is_string());
}

/// `from == to` is an empty window (`to` is exclusive), as the schema
/// allows; only `from` after `to` is refused.
#[tokio::test]
async fn equal_from_and_to_is_an_empty_window() {
    let app = ApiApp::sqlite().await;
    let (status, json) = app
        .request(
            Method::PUT,
            "/api/v1/vens/site-1/groups",
            app.token(Role::Admin),
            Some(&json!({"groups": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let t = "2026-01-01T00:00:00Z";
    let series = app
        .ok(
            Method::GET,
            &format!("/api/v1/series?ven=site-1&meter=main&quantity=active_power&from={t}&to={t}"),
            None,
        )
        .await;
    assert_eq!(series["points"], json!([]));
    let network = app
        .ok(
            Method::GET,
            &format!("/api/v1/network?from={t}&to={t}"),
            None,
        )
        .await;
    assert_eq!(network["points"], json!([]));
    let project = app
        .request(
            Method::POST,
            "/api/v1/projects",
            app.token(Role::Admin),
            Some(
                &json!({"name": "p", "kind": "renewable", "status": "planned", "capacity_kw": 1,
                          "location": {"latitude": 0, "longitude": 0}}),
            ),
        )
        .await;
    assert_eq!(project.0, StatusCode::CREATED, "{}", project.1);
    let id = project.1["id"].as_i64().unwrap();
    for what in ["energy", "finances"] {
        let answer = app
            .ok(
                Method::GET,
                &format!("/api/v1/projects/{id}/{what}?from={t}&to={t}"),
                None,
            )
            .await;
        assert_eq!(answer["from_ms"], answer["to_ms"], "{answer}");
    }
    let name = app
        .invalid_param(
            Method::GET,
            &format!("/api/v1/network?from=2026-01-02&to={t}"),
            None,
        )
        .await;
    assert_eq!(name, "from");
}

/// HTTP ingest needs exactly one of `ts` and `ts_ms`: the schema says so
/// with `oneOf`, not two optional properties.
#[test]
fn ingest_reading_schema_requires_one_time() {
    let doc = openapi_document();
    let reading = &doc["components"]["schemas"]["IngestReading"];
    let one_of = reading["oneOf"].as_array().unwrap();
    let required: Vec<&Value> = one_of.iter().map(|s| &s["required"]).collect();
    assert_eq!(required, [&json!(["ts"]), &json!(["ts_ms"])]);
}

/// The answers every operation can give are listed on every operation:
/// 400 with input, 413/415 with a JSON body, 401/403 with a token, 503
/// with the database, 500 always.
#[test]
fn every_operation_lists_its_common_answers() {
    let doc = openapi_document();
    for operation in Operation::ALL {
        let method = operation.method().as_str().to_ascii_lowercase();
        let described = &doc["paths"][operation.path()][&method];
        let responses = described["responses"].as_object().unwrap();
        let has = |status: &str| responses.contains_key(status);
        assert!(has("500"), "{operation:?}");
        let input = described["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
            || described.get("requestBody").is_some();
        if operation.is_openadr() {
            // openadr3.yaml also lists 400 where nothing is sent.
            assert!(has("400") || !input, "{operation:?}");
        } else {
            assert_eq!(has("400"), input, "{operation:?}");
        }
        if described["requestBody"]["required"] == true {
            assert!(has("413") && has("415"), "{operation:?}");
        }
        if operation.authenticated() {
            assert!(has("401"), "{operation:?}");
        }
        if operation.permission().is_some() {
            assert!(has("403"), "{operation:?}");
        }
        if !matches!(operation, Operation::Metrics | Operation::OpenApi) {
            assert!(has("503"), "{operation:?}");
        }
    }
}

//! VTN search benchmark: `GET /openadr3/3.1.0/events` as a VEN client
//! among N events and N VENs (default 10,000 each), beside the same search
//! as a BL client and a BL search by one target, measured in the same run.
//! Prints a markdown table; asserts nothing about speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench vtn
//! GRIDLINK_BENCH_VTN_N=1000 cargo bench -p gridlink-cloud --bench vtn
//! ```
//!
//! * SQLite in a temporary directory with the store's defaults (WAL,
//!   `synchronous = FULL`), the whole HTTP router driven in process
//!   (`tower::ServiceExt::oneshot`: no socket, so the figures are the
//!   server's own time: authentication, privacy, query, JSON).
//! * Seeded through the API as a client would: one program, N VENs
//!   (`venName` `ven-00000`..., each with its own `clientID`), N events
//!   each targeted at one VEN by name.
//! * Measured: [`REQUESTS`] sequential requests per case after
//!   [`WARM_UP`] unmeasured ones. The VEN client (a `ven`-role token named
//!   like a VEN's `clientID`) sees the untargeted events and those targeted
//!   at its VEN: one here. BL, no filter: the first page (50) of N. BL,
//!   `targets=`: the one event of that VEN.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::{self, AppState, auth};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, Role, Store};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Measured requests per case.
const REQUESTS: usize = 500;
/// Unmeasured requests before them.
const WARM_UP: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

struct App {
    router: axum::Router,
}

impl App {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    async fn created(&self, uri: &str, token: &str, body: &Value) -> String {
        let (status, json) = self.call(Method::POST, uri, token, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {json}");
        json["id"].as_str().expect("an id").to_owned()
    }
}

async fn token(store: &AnyStore, name: &str, role: Role) -> String {
    let token = auth::issue_token().expect("random token");
    store
        .create_token(name, role, &token.hash)
        .await
        .expect("store token");
    token.secret
}

/// Latencies of `REQUESTS` calls, ms, sorted; and the last answer's length.
async fn measure(app: &App, uri: &str, token: &str) -> (Vec<f64>, usize) {
    let mut times = Vec::with_capacity(REQUESTS);
    let mut found = 0;
    for i in 0..WARM_UP + REQUESTS {
        let started = Instant::now();
        let (status, json) = app.call(Method::GET, uri, token, None).await;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        found = json.as_array().map_or(0, Vec::len);
        if i >= WARM_UP {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    (times, found)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run() {
    let n: usize = std::env::var("GRIDLINK_BENCH_VTN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("vtn.db").display());
    let store = Arc::new(AnyStore::connect(&url).await.expect("open SQLite"));
    store.migrate().await.expect("migrate");
    let admin = token(&store, "bench-admin", Role::Admin).await;
    let probe = n / 2;
    let ven_token = token(&store, &format!("client-{probe:05}"), Role::Ven).await;
    let app = App {
        router: api::router(AppState::new(
            Arc::clone(&store),
            Arc::new(Metrics::default()),
        )),
    };

    let started = Instant::now();
    let program = app
        .created(
            "/openadr3/3.1.0/programs",
            &admin,
            &json!({ "programName": "bench" }),
        )
        .await;
    for i in 0..n {
        app.created(
            "/openadr3/3.1.0/vens",
            &admin,
            &json!({ "venName": format!("ven-{i:05}"), "clientID": format!("client-{i:05}") }),
        )
        .await;
    }
    for i in 0..n {
        app.created(
            "/openadr3/3.1.0/events",
            &admin,
            &json!({
                "programID": program, "targets": [format!("ven-{i:05}")],
                "intervalPeriod": { "start": "2030-01-01T00:00:00Z", "duration": "PT1H" },
                "intervals": [{ "id": 0, "payloads": [{ "type": "PRICE", "values": [0.1] }] }]
            }),
        )
        .await;
    }
    let seeded = started.elapsed().as_secs_f64();

    let cases = [
        (
            "VEN client, `GET /events`",
            "/openadr3/3.1.0/events".to_owned(),
            &ven_token,
        ),
        (
            "baseline: BL, `GET /events` (first page)",
            "/openadr3/3.1.0/events".to_owned(),
            &admin,
        ),
        (
            "baseline: BL, `GET /events?targets=<one VEN>`",
            format!("/openadr3/3.1.0/events?targets=ven-{probe:05}"),
            &admin,
        ),
    ];
    println!(
        "\nVTN search, {n} VENs and {n} events (SQLite, in-process router), seeded through the API in {seeded:.0} s\n"
    );
    println!("| case | requests | events answered | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, uri, token) in cases {
        let (times, found) = measure(&app, &uri, token).await;
        println!(
            "| {name} | {REQUESTS} | {found} | {:.2} | {:.2} | {:.2} |",
            percentile(&times, 50.0),
            percentile(&times, 99.0),
            times.last().copied().unwrap_or(0.0)
        );
    }
}

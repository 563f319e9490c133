//! Dashboard benchmark: every API request the dashboard's pages make,
//! timed through the whole router (auth, JSON, store) over months of data,
//! beside a baseline measured in the same run (`/health`: routing and one
//! trivial query). Prints a markdown table per backend; asserts nothing
//! about speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench dashboard
//! GRIDLINK_BENCH_QUICK=1 cargo bench -p gridlink-cloud --bench dashboard   # 1/6 of the days
//! GRIDLINK_BENCH_BACKENDS=sqlite cargo bench -p gridlink-cloud --bench dashboard
//! ```
//!
//! Data: [`VENS`] VENs, each with a site meter (`grid`, total active power)
//! read every minute for [`DAYS`] days up to now, and every 10 s for the
//! last 2 days (as a fast-polling agent would), loaded through
//! `Store::ingest` in groups of day-long batches, so the rollups and
//! network statistics are the ones ingest maintains; plus 20 events with
//! acknowledgements. Requests (through `tower::ServiceExt::oneshot`, no
//! socket): the overview, `/api/v1/vens`, a VEN and its loads, `series`
//! for each range of the site page (2 h raw at PT10S, day at PT1M, week at
//! PT15M, 30 days at PT1H), `network` for 24 h at PT15M, the event list
//! and one event's status; each [`RUNS`] times after a warm-up.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, IngestBatch, Role, Store, VenRegistration};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::postgres::PostgresCluster;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const VENS: usize = 5;
const DAYS: i64 = 90;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// Timed runs per request.
const RUNS: usize = 100;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(0)
}

/// A daily load curve with some noise, W.
fn watts(ts: i64, ven: usize) -> i64 {
    let minute = (ts / 60_000) % 1440;
    let base = 800 + 200 * i64::try_from(ven).unwrap_or(0);
    let day_curve = if (420..1320).contains(&minute) {
        1200
    } else {
        300
    };
    base + day_curve + (ts / 10_000 * 7919) % 150
}

/// Loads the data; returns (readings, seconds).
async fn load(store: &AnyStore, now: i64, days: i64) -> (u64, f64) {
    let started = Instant::now();
    let mut readings = 0;
    let first_day = now - days * DAY;
    for ven in 0..VENS {
        let ven_id = VenId::new(format!("ven-{ven}")).unwrap_or_else(|_| unreachable!());
        store
            .register_ven(
                &ven_id,
                &VenRegistration {
                    site: format!("Site {ven}"),
                    site_meter: Some("grid".into()),
                    groups: Some(vec!["all".into()]),
                    loads: None,
                },
                now,
            )
            .await
            .expect("register");
        let mut group = Vec::new();
        for day in 0..days {
            let from = first_day + day * DAY;
            let interval = if day >= days - 2 { 10_000 } else { 60_000 };
            let points: Vec<Point> = (0..DAY / interval)
                .map(|i| from + i * interval)
                .filter(|&ts| ts <= now)
                .map(|ts_ms| Point {
                    ts_ms,
                    raw: watts(ts_ms, ven),
                })
                .collect();
            readings += points.len() as u64;
            group.push(IngestBatch {
                ven_id: ven_id.clone(),
                batch_seq: u64::try_from(day).unwrap_or(0),
                received_ms: from + DAY,
                series: vec![Series {
                    meter: "grid".into(),
                    quantity: Quantity::ActivePower,
                    phase: Phase::Total,
                    exponent: 0,
                    points,
                }],
            });
            if group.len() == 10 {
                store.ingest(&group).await.expect("ingest");
                group.clear();
            }
        }
        if !group.is_empty() {
            store.ingest(&group).await.expect("ingest");
        }
    }
    (readings, started.elapsed().as_secs_f64())
}

struct App {
    router: axum::Router,
    token: String,
}

impl App {
    async fn call(&self, method: Method, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
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
            .expect("router");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// p50 and p99 of `RUNS` calls of `uri` (after 5 warm-up calls), and
    /// the size of the last answer.
    async fn time(&self, uri: &str) -> (Duration, Duration, usize) {
        let mut size = 0;
        for _ in 0..5 {
            let (status, body) = self.call(Method::GET, uri, None).await;
            assert!(status.is_success(), "{uri}: {status} {body}");
            size = body.to_string().len();
        }
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let (status, _) = self.call(Method::GET, uri, None).await;
            times.push(started.elapsed());
            assert!(status.is_success());
        }
        times.sort();
        (times[RUNS / 2], times[RUNS * 99 / 100], size)
    }
}

async fn events(app: &App, now: i64) -> String {
    let (status, program) = app
        .call(
            Method::POST,
            "/openadr3/3.1.0/programs",
            Some(&json!({ "programName": "bench" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{program}");
    let mut last = String::new();
    for i in 0..20 {
        let start = now - (20 - i) * DAY + 17 * HOUR;
        let start = time::OffsetDateTime::from_unix_timestamp(start / 1000)
            .expect("time")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format");
        let (status, event) = app
            .call(
                Method::POST,
                "/openadr3/3.1.0/events",
                Some(&json!({
                    "programID": program["id"], "eventName": format!("peak {i}"), "targets": ["all"],
                    "intervalPeriod": { "start": start, "duration": "PT2H" },
                    "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [1] }] }]
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
        event["id"]
            .as_str()
            .unwrap_or_default()
            .clone_into(&mut last);
    }
    last
}

async fn bench(name: &str, store: AnyStore, days: i64, out: &mut String) {
    store.migrate().await.expect("migrate");
    let store = Arc::new(store);
    let now = now_ms();
    let (readings, secs) = load(&store, now, days).await;
    let token = gridlink_cloud::api::auth::issue_token().expect("token");
    store
        .create_token("bench", Role::Admin, &token.hash)
        .await
        .expect("token");
    // As if ingest were connected, so `/health` answers 200 (the baseline).
    let metrics = Arc::new(Metrics::default());
    metrics.ingest.mqtt_connected.store(1, Ordering::Relaxed);
    let app = App {
        router: api::router(AppState::new(Arc::clone(&store), metrics)),
        token: token.secret,
    };
    let event = events(&app, now).await;
    let series = |span: i64, step: &str| {
        format!(
            "/api/v1/series?ven=ven-0&meter=grid&quantity=active_power&phase=total&from={}&to={now}&step={step}",
            now - span
        )
    };
    let requests = [
        ("/health (baseline)", "/health".to_owned()),
        ("/api/v1/me", "/api/v1/me".to_owned()),
        ("overview", "/api/v1/overview".to_owned()),
        ("vens", "/api/v1/vens".to_owned()),
        ("ven", "/api/v1/vens/ven-0".to_owned()),
        ("loads", "/api/v1/vens/ven-0/loads".to_owned()),
        ("series 2 h, raw (PT10S)", series(2 * HOUR, "PT10S")),
        ("series day, PT1M", series(DAY, "PT1M")),
        ("series week, PT15M", series(7 * DAY, "PT15M")),
        ("series 30 days, PT1H", series(30 * DAY, "PT1H")),
        (
            "network 24 h, PT15M",
            format!("/api/v1/network?from={}&to={now}&step=PT15M", now - DAY),
        ),
        (
            "events (limit 50)",
            "/openadr3/3.1.0/events?limit=50".to_owned(),
        ),
        ("event status", format!("/api/v1/events/{event}/status")),
    ];
    let _ = writeln!(
        out,
        "\n### {name}: {VENS} VENs, {days} days, {readings} readings loaded in {secs:.1} s \
         ({:.0} readings/s through Store::ingest)\n",
        readings as f64 / secs
    );
    let _ = writeln!(
        out,
        "| request | p50 ms | p99 ms | p50 / baseline | answer bytes |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let mut baseline = None;
    for (label, uri) in requests {
        let (p50, p99, size) = app.time(&uri).await;
        let base = *baseline.get_or_insert(p50);
        let _ = writeln!(
            out,
            "| {label} | {:.2} | {:.2} | {:.1}x | {size} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            p50.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
        println!("{label}: p50 {p50:?} p99 {p99:?}");
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("GRIDLINK_BENCH_QUICK").is_some();
    let days = if quick { DAYS / 6 } else { DAYS };
    let backends =
        std::env::var("GRIDLINK_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let mut out = String::from("## Dashboard requests");
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = AnyStore::connect(&url).await.expect("sqlite");
        bench("SQLite", store, days, &mut out).await;
    }
    if backends.contains("postgres") {
        let cluster = PostgresCluster::start().await;
        let url = cluster.create_database("dashboard_bench").await;
        let store = AnyStore::connect(&url).await.expect("postgres");
        bench("PostgreSQL", store, days, &mut out).await;
    }
    println!("{out}");
}

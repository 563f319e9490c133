//! HTTP ingest benchmark: `POST /api/v1/ingest` through the whole router
//! (in process, `tower::ServiceExt::oneshot`, no socket) set beside
//! `Store::ingest` of the same batches called directly, in the same run,
//! on SQLite (a file with the store's defaults: WAL, `synchronous = FULL`)
//! and PostgreSQL (a throwaway gridlink-testkit cluster: fsync and
//! synchronous commit off). Prints a markdown table; asserts nothing about
//! speed.
//!
//! ```text
//! cargo bench -p gridlink-cloud --bench http_ingest
//! GRIDLINK_BENCH_QUICK=1 cargo bench -p gridlink-cloud --bench http_ingest   # a smoke run
//! ```
//!
//! Workload: requests of one VEN with [`READINGS`] readings of one series
//! (1 s apart, new times every request, so every reading is stored), sent
//! one after the other, and from [`CLIENTS`] concurrent clients (each its
//! own VEN and key). Rows: the store called directly (the ceiling), HTTP
//! without `Idempotency-Key` (one more small transaction per request for
//! the per-VEN `batch_seq` counter), and HTTP with `Idempotency-Key`.

#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is the report")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::{self, ApiKeySecret, AppState};
use gridlink_cloud::config::HttpIngestConfig;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{
    AnyStore, ApiKeyStore as _, HTTP_SEQ_BASE, IngestBatch, NewApiKey, Store,
};
use gridlink_protocol::{Phase, Point, Quantity, Series, VenId};
use gridlink_testkit::postgres::PostgresCluster;
use tower::ServiceExt as _;

/// Readings per request.
const READINGS: usize = 100;
/// Concurrent clients in the concurrent rows.
const CLIENTS: usize = 8;
/// 2026-11-22T00:00:00Z.
const DAY0: i64 = 1_795_305_600_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Store,
    Http,
    HttpIdempotent,
}

impl Path {
    const fn name(self) -> &'static str {
        match self {
            Self::Store => "Store::ingest (direct)",
            Self::Http => "POST /api/v1/ingest",
            Self::HttpIdempotent => "POST /api/v1/ingest + Idempotency-Key",
        }
    }
}

struct Bench {
    router: Router,
    store: Arc<AnyStore>,
    keys: Vec<String>,
}

/// The JSON body and the batch of request `n` of client `client`.
fn request(client: usize, n: usize) -> (String, IngestBatch) {
    let start = DAY0 + (n * READINGS) as i64 * 1000;
    let ven = format!("bench-{client}");
    let mut series = Series::new("main", Quantity::ActivePower, Phase::Total, -3);
    let mut readings = Vec::with_capacity(READINGS);
    for i in 0..READINGS {
        let ts_ms = start + i as i64 * 1000;
        let value = 1000.0 + ((n * 7 + i * 13) % 500) as f64 + 0.25;
        series.points.push(Point {
            ts_ms,
            raw: (value * 1000.0) as i64,
        });
        readings.push(format!(
            r#"{{"meter":"main","quantity":"active_power","ts_ms":{ts_ms},"value":{value}}}"#
        ));
    }
    let body = format!(
        r#"{{"ven_id":"{ven}","readings":[{}]}}"#,
        readings.join(",")
    );
    let batch = IngestBatch {
        ven_id: VenId::new(ven).unwrap(),
        // The bench's own range, below the allocated ones.
        batch_seq: HTTP_SEQ_BASE - 1_000_000 + n as u64,
        received_ms: start,
        series: vec![series],
    };
    (body, batch)
}

impl Bench {
    async fn new(url: &str) -> Self {
        let store = Arc::new(AnyStore::connect(url).await.unwrap());
        store.migrate().await.unwrap();
        let mut keys = Vec::new();
        for client in 0..CLIENTS {
            let secret = ApiKeySecret::generate().unwrap();
            let key = NewApiKey {
                name: format!("bench {client}"),
                customer: "bench".into(),
                ven_ids: vec![VenId::new(format!("bench-{client}")).unwrap()],
                hash: secret.hash(),
            };
            let record = store.create_api_key(&key, DAY0).await.unwrap();
            keys.push(secret.key(record.id));
        }
        let config = HttpIngestConfig {
            rate_per_s: 100_000,
            burst: 100_000,
            ..HttpIngestConfig::default()
        };
        let state = AppState::new(Arc::clone(&store), Arc::new(Metrics::default()))
            .with_http_ingest(config.http_ingest());
        Self {
            router: api::router(state),
            store,
            keys,
        }
    }

    /// One request of `client` by `path`.
    async fn send(&self, path: Path, client: usize, n: usize) {
        let (body, batch) = request(client, n);
        if path == Path::Store {
            let outcome = self.store.ingest(&[batch]).await.unwrap();
            assert_eq!(outcome.inserted_readings, READINGS as u64);
            return;
        }
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/ingest")
            .header("content-type", "application/json")
            .header("x-api-key", &self.keys[client]);
        if path == Path::HttpIdempotent {
            builder = builder.header("idempotency-key", format!("req-{n}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(builder.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["accepted"], READINGS, "{answer}");
    }

    /// `requests` per client from `clients` clients starting at request
    /// `first`: per-request latencies and the wall time.
    async fn run(
        self: &Arc<Self>,
        path: Path,
        clients: usize,
        first: usize,
        requests: usize,
    ) -> (Vec<Duration>, Duration) {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..clients {
            let bench = Arc::clone(self);
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(requests);
                for n in first..first + requests {
                    let t = Instant::now();
                    bench.send(path, client, n).await;
                    latencies.push(t.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::new();
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.unwrap());
        }
        (latencies, started.elapsed())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let quick = std::env::var_os("GRIDLINK_BENCH_QUICK").is_some();
    let requests = if quick { 30 } else { 300 };
    let dir = tempfile::tempdir().unwrap();
    let cluster = PostgresCluster::start().await;
    let backends = [
        (
            "SQLite",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
        (
            "PostgreSQL",
            cluster.create_database("http_ingest_bench").await,
        ),
    ];
    println!(
        "HTTP ingest, {READINGS} readings per request, {requests} requests per client \
         (after {} warm-up requests)\n",
        requests / 10
    );
    println!("| database | path | clients | p50 ms | p99 ms | max ms | requests/s | readings/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, url) in backends {
        let bench = Arc::new(Bench::new(&url).await);
        let mut next = 0;
        for clients in [1, CLIENTS] {
            for path in [Path::Store, Path::Http, Path::HttpIdempotent] {
                let warm = requests / 10;
                bench.run(path, clients, next, warm).await;
                next += warm;
                let (mut latencies, wall) = bench.run(path, clients, next, requests).await;
                next += requests;
                latencies.sort();
                let total = latencies.len() as f64;
                println!(
                    "| {name} | {} | {clients} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    path.name(),
                    ms(percentile(&latencies, 0.5)),
                    ms(percentile(&latencies, 0.99)),
                    ms(*latencies.last().unwrap()),
                    total / wall.as_secs_f64(),
                    total * READINGS as f64 / wall.as_secs_f64(),
                );
            }
        }
    }
}
